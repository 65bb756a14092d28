//! Tracker wire types.
