//! `glfs`: a file on a Gluster volume through libgfapi's async calls (real or the fake).
//! Completions run on gfapi's callback thread.

use bytes::Bytes;
use gfapi::{File, IoError};
use std::sync::Arc;
use store_api::{
    check_range, BlockStore, Capabilities, Completion, ErrorKind, Geometry, IoReply, IoRequest, Op,
    StoreError,
};

/// Zeroes written where gfapi cannot zerofill or discard (static, so never copied or freed).
static ZEROES: [u8; 4 << 20] = [0; 4 << 20];

/// A store on a gfapi file. Holds the file, which holds the (shared) volume.
pub struct GlfsStore {
    file: Arc<File>,
    geometry: Geometry,
    description: String,
}

impl GlfsStore {
    /// Serves `file` with `geometry`; `description` is what [`BlockStore::describe`] says.
    pub fn new(file: Arc<File>, geometry: Geometry, description: String) -> GlfsStore {
        GlfsStore {
            file,
            geometry,
            description,
        }
    }
}

fn store_error(op: Op, e: IoError) -> StoreError {
    match e {
        IoError::Errno(errno) => StoreError::from_errno(op, errno),
        IoError::Short { .. } => StoreError::new(op, ErrorKind::ShortTransfer),
    }
}

/// Writes `len` zero bytes at `offset`, one chunk after another, then calls `done`.
fn write_zero_chain(file: Arc<File>, op: Op, offset: u64, len: u64, done: Completion) {
    if len == 0 {
        return done.complete(Ok(IoReply::Done));
    }
    let n = len.min(ZEROES.len() as u64);
    let next = file.clone();
    file.pwrite_async(
        offset,
        Bytes::from_static(&ZEROES[..n as usize]),
        move |r| match r {
            Ok(()) => write_zero_chain(next, op, offset + n, len - n, done),
            Err(e) => done.complete(Err(store_error(op, e))),
        },
    );
}

/// Completes `done` from a zerofill/discard result, falling back to writing zeroes when gfapi
/// says the operation is unsupported.
fn zero_fallback(
    file: Arc<File>,
    op: Op,
    offset: u64,
    len: u64,
    done: Completion,
) -> impl FnOnce(Result<(), IoError>) + Send + 'static {
    move |r| match r {
        Ok(()) => done.complete(Ok(IoReply::Done)),
        Err(IoError::Errno(e)) if e == libc::EOPNOTSUPP || e == libc::ENOSYS => {
            write_zero_chain(file, op, offset, len, done)
        }
        Err(e) => done.complete(Err(store_error(op, e))),
    }
}

impl BlockStore for GlfsStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            write_zeroes: true,
            discard_zeroes: true,
        }
    }

    fn submit(&self, req: IoRequest, done: Completion) {
        if let Err(e) = check_range(self.geometry, &req) {
            return done.complete(Err(e));
        }
        match req {
            IoRequest::Read { offset, len } => {
                self.file.pread_async(offset, len as usize, move |r| {
                    done.complete(r.map(IoReply::Data).map_err(|e| store_error(Op::Read, e)))
                })
            }
            IoRequest::Write { offset, data, fua } => {
                let file = self.file.clone();
                self.file.pwrite_async(offset, data, move |r| match r {
                    Ok(()) if fua => file.fdatasync_async(move |r| {
                        done.complete(
                            r.map(|()| IoReply::Done)
                                .map_err(|e| store_error(Op::Write, e)),
                        )
                    }),
                    r => done.complete(
                        r.map(|()| IoReply::Done)
                            .map_err(|e| store_error(Op::Write, e)),
                    ),
                })
            }
            IoRequest::Flush => self.file.fdatasync_async(move |r| {
                done.complete(
                    r.map(|()| IoReply::Done)
                        .map_err(|e| store_error(Op::Flush, e)),
                )
            }),
            IoRequest::Discard { offset, len } => {
                if len == 0 {
                    return done.complete(Ok(IoReply::Done));
                }
                let cb = zero_fallback(self.file.clone(), Op::Discard, offset, len, done);
                self.file.discard_async(offset, len, cb)
            }
            IoRequest::WriteZeroes { offset, len } => {
                if len == 0 {
                    return done.complete(Ok(IoReply::Done));
                }
                let cb = zero_fallback(self.file.clone(), Op::WriteZeroes, offset, len, done);
                self.file.zerofill_async(offset, len, cb)
            }
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
