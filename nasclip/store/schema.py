"""The catalog's schema: the migration ladder, one step per schema version.

``MIGRATIONS[n]`` takes a database from version n to n+1, as one script in
one transaction with its version (catalog.Catalog._migrate). Each step says
what it adds and why; the columns' meanings are here, next to their SQL.
"""

from __future__ import annotations

# The migration ladder: MIGRATIONS[n] takes a database from version n to n+1.
# Never edit a step that has shipped; add a new one.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        share TEXT NOT NULL,
        relpath BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        fingerprint TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'indexed', 'failed', 'gone')),
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at REAL,
        added REAL NOT NULL,
        updated REAL NOT NULL,
        gone_at REAL,
        UNIQUE (share, relpath)
    );
    CREATE INDEX files_state ON files (state, mtime_ns);
    CREATE INDEX files_fingerprint ON files (fingerprint);
    CREATE TABLE vectors (
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        PRIMARY KEY (model_id, file_id)
    ) WITHOUT ROWID;
    CREATE INDEX vectors_file ON vectors (file_id);
    CREATE TABLE vector_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2: claiming work must not walk every row waiting for a retry (10,000 empty files
    # made each claim of 8 photos read all of them). New work in mtime order, due retries by time.
    """
    CREATE INDEX files_new ON files (mtime_ns) WHERE state = 'pending' AND retry_at IS NULL;
    CREATE INDEX files_retry ON files (retry_at) WHERE state = 'pending' AND retry_at IS NOT NULL;
    """,
    # 2 -> 3: what the photo says of itself (issue 16), read when it is decoded. taken is the
    # capture time on the photo's own wall clock (seconds since 1970 as if it were UTC),
    # taken_offset its minutes east of UTC where the photo says, taken_source 'exif' or
    # 'mtime' (no capture time in the file); NULL taken_source: not read yet.
    """
    ALTER TABLE files ADD COLUMN taken REAL;
    ALTER TABLE files ADD COLUMN taken_offset INTEGER;
    ALTER TABLE files ADD COLUMN taken_source TEXT;
    ALTER TABLE files ADD COLUMN camera_make TEXT;
    ALTER TABLE files ADD COLUMN camera_model TEXT;
    ALTER TABLE files ADD COLUMN lat REAL;
    ALTER TABLE files ADD COLUMN lon REAL;
    CREATE INDEX files_unread_meta ON files (id) WHERE taken_source IS NULL AND state = 'indexed';
    CREATE INDEX files_taken ON files (share, taken);
    """,
    # 3 -> 4: where a photo's GPS position is, named offline (nasclip/meta/places.py): the nearest
    # city's GeoNames id, its admin1 region code and ISO country code, stored so that a place filter
    # compares columns. place_country '' means looked up with no city in reach; NULL with a lat,
    # not looked up yet (rows of schema 3), which files_unplaced finds for the backfill.
    """
    ALTER TABLE files ADD COLUMN place_city INTEGER;
    ALTER TABLE files ADD COLUMN place_region TEXT;
    ALTER TABLE files ADD COLUMN place_country TEXT;
    CREATE INDEX files_unplaced ON files (id) WHERE lat IS NOT NULL AND place_country IS NULL;
    CREATE INDEX files_place ON files (place_country, place_region, place_city) WHERE place_country != '';
    """,
    # 4 -> 5: text recognised in the photos (issue 17), a second pass after the vector. One ocr row
    # per photo once it is indexed: 'pending' until read, then 'done' (its lines in text, '' for none)
    # or 'failed' (error says why). fingerprint is the content that was read: a copy or twin with the
    # same fingerprint takes the text instead of being read again. Triggers keep it in step whoever
    # writes files: a row that becomes indexed is queued; a file whose size or mtime changes is
    # pending again (an edit is read again; a rename changes neither). ocr_text indexes the folded
    # text (nasclip/ocr/textform.py) with FTS5's trigram tokenizer, rowid = file id: substrings of 3+
    # characters in any script; shorter terms are looked up with instr() on its column.
    """
    CREATE TABLE ocr (
        file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
        fingerprint TEXT,
        text TEXT,
        error TEXT,
        updated REAL
    );
    CREATE INDEX ocr_pending ON ocr (file_id) WHERE state = 'pending';
    CREATE INDEX ocr_state ON ocr (state);
    CREATE INDEX ocr_fingerprint ON ocr (fingerprint) WHERE state != 'pending';
    CREATE VIRTUAL TABLE ocr_text USING fts5 (folded, tokenize = 'trigram');
    INSERT INTO ocr (file_id, state) SELECT id, 'pending' FROM files WHERE state = 'indexed';
    CREATE TRIGGER ocr_queue AFTER UPDATE OF state ON files WHEN new.state = 'indexed' BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    CREATE TRIGGER ocr_queue_new AFTER INSERT ON files WHEN new.state = 'indexed' BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    CREATE TRIGGER ocr_changed AFTER UPDATE OF size, mtime_ns ON files
        WHEN new.size IS NOT old.size OR new.mtime_ns IS NOT old.mtime_ns BEGIN
        UPDATE ocr SET state = 'pending', fingerprint = NULL, text = NULL, error = NULL WHERE file_id = new.id;
        DELETE FROM ocr_text WHERE rowid = new.id;
    END;
    CREATE TRIGGER ocr_forget AFTER DELETE ON ocr BEGIN
        DELETE FROM ocr_text WHERE rowid = old.file_id;
    END;
    """,
    # 5 -> 6: several vectors per file (issue 18): videos, camera RAW, Live Photos. kind is what the
    # indexer made of a file when it last indexed it: 'photo', 'raw', 'video', or 'clip' (a Live
    # Photo's motion beside its still: done, with no vector of its own); NULL for rows indexed
    # before (only photos were) or not yet. duration: a video's length in seconds. A video's vectors
    # are its moments, one row per sampled frame and model with its time in seconds; a moment's FAISS
    # id is computed from (file_id, idx) (nasclip/store/moments.py), and the vector log's file_id
    # column holds such ids for video frames. A vectors row still says that the model's index holds
    # the file: for a video all of its moments, for a clip nothing (so it is not queued again).
    # files_videos and files_clips list those, few beside the photos, for the queries that treat them apart.
    # stem: the file name without its extension, case folded (nasclip/media/pairs.py), as bytes like
    # relpath: a RAW and its JPEG, a Live Photo's still and clip, share it in one folder; rows of schema 5 get theirs at
    # start-up (files_unstemmed). The text pass queues photos and RAWs only (videos show no text to
    # read). Videos and RAWs that failed under schema 5 (nasclip could not read them yet) are tried again.
    """
    ALTER TABLE files ADD COLUMN kind TEXT;
    ALTER TABLE files ADD COLUMN duration REAL;
    ALTER TABLE files ADD COLUMN stem BLOB;
    CREATE INDEX files_stem ON files (share, stem);
    CREATE INDEX files_videos ON files (id) WHERE kind = 'video';
    CREATE INDEX files_clips ON files (id) WHERE kind = 'clip';
    CREATE INDEX files_unstemmed ON files (id) WHERE stem IS NULL;
    CREATE TABLE moments (
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        seconds REAL NOT NULL,
        PRIMARY KEY (model_id, file_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX moments_file ON moments (file_id);
    DROP TRIGGER ocr_queue;
    DROP TRIGGER ocr_queue_new;
    CREATE TRIGGER ocr_queue AFTER UPDATE OF state ON files
        WHEN new.state = 'indexed' AND coalesce(new.kind, 'photo') IN ('photo', 'raw') BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    CREATE TRIGGER ocr_queue_new AFTER INSERT ON files
        WHEN new.state = 'indexed' AND coalesce(new.kind, 'photo') IN ('photo', 'raw') BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    UPDATE files SET state = 'pending', error = NULL, attempts = 0, retry_at = NULL WHERE state = 'failed' AND (
        CAST(relpath AS TEXT) LIKE '%.dng' OR CAST(relpath AS TEXT) LIKE '%.cr2' OR CAST(relpath AS TEXT) LIKE '%.cr3'
        OR CAST(relpath AS TEXT) LIKE '%.nef' OR CAST(relpath AS TEXT) LIKE '%.arw'
        OR CAST(relpath AS TEXT) LIKE '%.raf' OR CAST(relpath AS TEXT) LIKE '%.orf'
        OR CAST(relpath AS TEXT) LIKE '%.rw2' OR CAST(relpath AS TEXT) LIKE '%.pef'
        OR CAST(relpath AS TEXT) LIKE '%.mp4' OR CAST(relpath AS TEXT) LIKE '%.m4v'
        OR CAST(relpath AS TEXT) LIKE '%.mov' OR CAST(relpath AS TEXT) LIKE '%.mkv'
        OR CAST(relpath AS TEXT) LIKE '%.webm' OR CAST(relpath AS TEXT) LIKE '%.avi'
        OR CAST(relpath AS TEXT) LIKE '%.3gp' OR CAST(relpath AS TEXT) LIKE '%.mts'
        OR CAST(relpath AS TEXT) LIKE '%.m2ts');
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
