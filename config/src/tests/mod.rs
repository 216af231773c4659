//! Tests that cross modules: the typed configs key by key, the samples in
//! `examples/`, and seeded random mutations of those samples.

mod appliance;
mod domain;
mod mutations;
mod samples;
