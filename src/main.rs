//! `keyviz` command line (being assembled).
fn main() {}
