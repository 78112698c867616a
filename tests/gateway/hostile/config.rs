//! Finding 9: fail-open configuration and validation that differs between routes.
