;; echo: copies stdin to stdout until end of file (a line at a time from a
;; terminal or pipe), then exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0 (buf 1024, len 4096); nread at 16; write iovec at 32; nwritten at 48.
  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (block $eof
      (loop $more
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $eof (i32.eqz (local.get $n)))
        (i32.store (i32.const 32) (i32.const 1024))
        (i32.store (i32.const 36) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48)))
        (br $more)))))
