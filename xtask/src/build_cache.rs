//! The translation cache: outputs stored under a key made of every input that affects them.
