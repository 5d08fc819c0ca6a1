//go:build !windows && !plan9 && !linux && !openbsd

package bbolt

// fdatasync flushes written data to a file descriptor.
func fdatasync(db *DB) error {
	if db.fileHook != nil { // raftsnap patch: see Options.FileHook
		return db.fileHook.Sync(db.file)
	}
	return db.file.Sync()
}
