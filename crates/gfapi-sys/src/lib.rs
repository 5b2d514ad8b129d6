//! Raw C ABI of libgfapi >= 6, resolved at run time (the only home of gfapi unsafe code)
