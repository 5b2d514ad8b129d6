//! A file-backed libgfapi.so.0 drop-in with fault injection
