//! The wallet file.
