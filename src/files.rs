//! Log and corpus files, gzip-compressed or not: readers detect gzip by its magic bytes,
//! writers compress when the name ends in `.gz`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// Buffer size for reading and writing large logs.
const BUFFER: usize = 1 << 20;

/// Opens a file for reading, transparently decompressing gzip.
pub(crate) fn open(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::with_capacity(BUFFER, File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::bufread::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}

/// Creates a file for writing, gzip-compressed when its name ends in `.gz`. Call `flush` and
/// drop the writer to finish the file.
pub(crate) fn create(path: &Path) -> std::io::Result<Box<dyn Write>> {
    let file = BufWriter::with_capacity(BUFFER, File::create(path)?);
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    })
}
