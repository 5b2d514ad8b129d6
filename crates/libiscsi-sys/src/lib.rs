//! FFI to libiscsi (the initiator library) for driving the target from Rust tests
