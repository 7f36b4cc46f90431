//! Reads ELF, Mach-O and PE files: their needed libraries, runtime search paths and exported symbols.
