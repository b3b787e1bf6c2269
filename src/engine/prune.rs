//! Prune: repack partly used packs, write the new index, then delete what no snapshot needs.
