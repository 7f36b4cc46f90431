//! Writes reproducible .tar.gz archives (sorted, fixed mtime and owner, parallel gzip members).
