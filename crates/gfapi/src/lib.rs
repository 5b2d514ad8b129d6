//! Safe gfapi API over gfapi-sys: volumes, files, sync and async I/O
