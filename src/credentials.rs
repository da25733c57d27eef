//! Reading credentials.
