//! Integration tests of the admin surface over real HTTP on 127.0.0.1.
