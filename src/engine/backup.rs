//! Backup: walk sources, chunk, deduplicate, compress, encrypt, pack; then index and snapshot.
