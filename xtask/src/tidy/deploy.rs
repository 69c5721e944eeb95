//! The deployment examples name only real settings and routes.
