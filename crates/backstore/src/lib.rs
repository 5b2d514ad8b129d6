//! Block stores behind store-api's BlockStore: memory, plain file, glfs
