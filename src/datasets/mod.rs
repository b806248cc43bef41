//! Fetching public problem sets (being built).
