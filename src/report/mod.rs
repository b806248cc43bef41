//! Reports over finished runs (being built).
