//! Blobs written outside a backup (copy, repair): sealed into packs of the usual size, each pack saved whole, then one index for them all.

use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::index::{split_into_files, IndexPack};
use crate::repo::pack::{seal_blob, BlobType, PackWriter};
use crate::repo::Repository;

const PACK_TARGET: usize = super::backup::PACK_TARGET;
const INDEX_MAX_BLOBS: usize = 40_000;

/// Packs of blobs for `dst`: data and tree blobs in packs of their own, as restic keeps them.
pub(crate) struct Packer<'a> {
    pub dst: &'a mut Repository,
    writers: [PackWriter; 2],
    written: Vec<IndexPack>,
}

impl<'a> Packer<'a> {
    pub fn new(dst: &'a mut Repository) -> Packer<'a> {
        Packer {
            dst,
            writers: [PackWriter::new(), PackWriter::new()],
            written: Vec::new(),
        }
    }

    /// Adds a blob (its plaintext); a full pack is saved at once.
    pub fn add(&mut self, id: Id, tpe: BlobType, plain: &[u8]) -> Result<()> {
        let sealed = seal_blob(self.dst.key(), tpe, id, plain, self.dst.compression);
        let w = &mut self.writers[tpe as usize];
        w.add(&sealed);
        if w.size() >= PACK_TARGET {
            self.flush_one(tpe as usize)?;
        }
        Ok(())
    }

    fn flush_one(&mut self, i: usize) -> Result<()> {
        let w = std::mem::take(&mut self.writers[i]);
        if w.is_empty() {
            return Ok(());
        }
        let (bytes, id, blobs) = w.finish(self.dst.key());
        self.dst.save_pack(&id, &bytes)?;
        self.written.push(IndexPack::from_packed(id, &blobs));
        Ok(())
    }

    /// Saves the last packs, then the index that names them all (merged into `dst`'s): from
    /// here on the blobs are found.
    pub fn commit(mut self) -> Result<()> {
        self.flush_one(0)?;
        self.flush_one(1)?;
        for f in split_into_files(std::mem::take(&mut self.written), INDEX_MAX_BLOBS) {
            let id = self.dst.save_unpacked(FileType::Index, &f)?;
            self.dst.index_mut().merge_file(id, &f);
        }
        Ok(())
    }
}
