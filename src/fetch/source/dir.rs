//! Packages from a local directory: `<root>/<url path>`, else
//! `<root>/<file name>`. For tests and for offline mirrors (an NFS share, a
//! copied archive).

use super::{Body, BoxFuture, PackageSource, Resume};
use crate::fetch::error::FetchError;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: &Path) -> DirSource {
        DirSource { root: root.to_path_buf() }
    }

    fn path_for(&self, url: &str) -> Option<PathBuf> {
        let no_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let path = no_scheme.split_once('/').map_or("", |(_, p)| p);
        let safe = |p: &str| !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if safe(path) {
            let full = self.root.join(path);
            if full.is_file() {
                return Some(full);
            }
        }
        let name = crate::manifest::file_name_of(url);
        safe(name).then(|| self.root.join(name)).filter(|p| p.is_file())
    }
}

struct FileBody(std::fs::File);

impl Body for FileBody {
    fn chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, FetchError>> {
        Box::pin(async move {
            let mut buf = vec![0u8; 256 << 10];
            let n = self.0.read(&mut buf).map_err(|e| FetchError::io("reading the source file", e))?;
            buf.truncate(n);
            Ok((n > 0).then(|| bytes::Bytes::from(buf)))
        })
    }
}

impl PackageSource for DirSource {
    fn location(&self, url: &str) -> String {
        self.path_for(url).map_or_else(|| format!("{} (not found)", url), |p| p.display().to_string())
    }

    fn get<'a>(
        &'a self,
        url: &'a str,
        resume: Option<&'a Resume>,
    ) -> BoxFuture<'a, Result<super::Response, FetchError>> {
        Box::pin(async move {
            let path = self.path_for(url).ok_or(FetchError::Status(404))?;
            let mut file = std::fs::File::open(&path).map_err(|e| FetchError::io("opening the source file", e))?;
            let meta = file.metadata().map_err(|e| FetchError::io("reading the source file", e))?;
            let validator = meta.modified().ok().map(|m| format!("{:?}-{}", m, meta.len()));
            let resumable = resume.filter(|r| r.validator.is_none() || r.validator == validator);
            let offset = resumable.map_or(0, |r| r.offset);
            if offset > meta.len() {
                return Err(FetchError::Status(416));
            }
            file.seek(SeekFrom::Start(offset)).map_err(|e| FetchError::io("seeking the source file", e))?;
            Ok(super::Response {
                partial: resumable.is_some(),
                length: Some(meta.len() - offset),
                validator,
                body: Box::new(FileBody(file)),
            })
        })
    }
}
