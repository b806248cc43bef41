//! The live dashboard and run viewer (being built).
