//! A replica of a range and the Store that holds all replicas of a node.
