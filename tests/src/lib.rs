//! Cluster harness for end-to-end, fault and workload tests.
