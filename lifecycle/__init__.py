"""The bucket's lifecycle: retention, garbage collection that never breaks a pull, verifying
and repairing what is kept, and the status report (docs/retention.md). The sync side: it reads
and writes the bucket through registry/, and repairs through sync's copier."""
