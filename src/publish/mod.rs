//! Publish.
