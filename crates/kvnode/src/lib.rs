//! The KeyViz reference store (work in progress).
