//! Integration tests of the `keyviz` binary.
