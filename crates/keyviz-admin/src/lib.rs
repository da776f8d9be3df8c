//! KeyViz admin HTTP surface (work in progress).
