//! roadsightd check.
