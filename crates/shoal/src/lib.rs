//! Shoal native engine.
