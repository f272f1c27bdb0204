//! Rendering tests: recorded streams replayed into text and JSON.
