;; Grows linear memory one 64 KiB page at a time, touching every 4 KiB of
;; each new page, until memory.grow fails; then prints
;; "memory.grow refused at N pages" and exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "memory.grow refused at ")
  (data (i32.const 100) " pages\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  ;; Writes n in decimal ending just before 200; returns the start address.
  (func $itoa (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (i32.const 200))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (i32.ne (local.get $n) (i32.const 0))))
    (local.get $p))
  (func (export "_start")
    (local $old i32) (local $k i32) (local $start i32)
    ;; An empty write first: under the preview 1 adapter (the component
    ;; build) the first WASI call takes the adapter's state from this
    ;; memory, which must not be exhausted by then.
    (call $write (i32.const 64) (i32.const 0))
    (block $refused
      (loop $grow
        (local.set $old (memory.grow (i32.const 1)))
        (br_if $refused (i32.eq (local.get $old) (i32.const -1)))
        (local.set $k (i32.const 0))
        (loop $touch
          (i32.store (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.mul (local.get $k) (i32.const 4096))) (i32.const 1))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $touch (i32.lt_u (local.get $k) (i32.const 16))))
        (br $grow)))
    (call $write (i32.const 64) (i32.const 23))
    (local.set $start (call $itoa (memory.size)))
    (call $write (local.get $start) (i32.sub (i32.const 200) (local.get $start)))
    (call $write (i32.const 100) (i32.const 7))))
