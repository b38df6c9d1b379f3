//! Blocking UDP requests to the committee, with retries.
