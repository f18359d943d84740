;; Multi-memory and threads' atomics: builds the message in a second,
;; shared memory with atomic stores, copies it into the exported memory
;; WASI reads; prints "two memories".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory $main (export "memory") 1)
  (memory $side 1 1 shared)
  (data (memory $side) (i32.const 100) "two memories\n")
  (func (export "_start")
    ;; An atomic read-modify-write on the shared memory: 0 + 13.
    (drop (i32.atomic.rmw.add $side (i32.const 0) (i32.const 13)))
    (memory.copy $main $side (i32.const 16) (i32.const 100) (i32.atomic.load $side (i32.const 0)))
    (i32.store $main (i32.const 0) (i32.const 16))
    (i32.store $main (i32.const 4) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
