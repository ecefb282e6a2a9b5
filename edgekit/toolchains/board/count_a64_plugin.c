/* edgekit's QEMU TCG plugin for user-mode (qemu-aarch64) runs: counts the guest instructions executed, and
 * records the running count each time the guest makes the marking system call, `syscall=NUMBER` with its
 * second argument in [magic, magic + 0xffff] (`magic=VALUE`). edgekit's runner marks with
 * lseek(/dev/null, magic + TAG, SEEK_SET), which succeeds, does nothing and is otherwise never made with
 * such an offset. At exit it writes one line to `out=FILE`:
 *   {"total": N, "marks": [[tag, count], ...]}
 * With `symbols=1` it also counts instructions per translated block, between the first mark tagged 1 and the
 * first mark tagged 2 after it, and writes them as
 *   "blocks": [[pc, count, executions], ...]
 * for the caller to attribute to the shared libraries' symbols (a block that starts a function executes once
 * per call of it).
 * Counting is inline (one add per translated block entry), so a run costs little more than without it.
 *
 * Debian ships no qemu-plugin.h, so the part of QEMU's plugin API (version 1, QEMU 7.x) this uses is
 * declared here, as QEMU's include/qemu/qemu-plugin.h declares it. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

typedef struct {
  uint64_t pc;
  uint64_t insns;
  uint64_t executions;
  uint64_t window;
} Block;

static uint64_t executed;
static int64_t mark_syscall = -1;
static uint64_t magic = UINT64_MAX;
static uint64_t (*marks)[2];
static size_t n_marks, mark_capacity;
static bool per_block;
static Block **blocks; /* one record per translation; the same pc may be translated more than once */
static size_t n_blocks, block_capacity;
static int window_state; /* 0: before the window, 1: in it, 2: closed */
static char out_path[4096];

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
  (void)id, (void)vcpu_index, (void)a1, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
  if (num != mark_syscall || a2 < magic || a2 - magic > 0xffff) return;
  if (n_marks == mark_capacity) {
    mark_capacity = mark_capacity ? mark_capacity * 2 : 64;
    marks = realloc(marks, mark_capacity * sizeof *marks);
    if (!marks) abort();
  }
  marks[n_marks][0] = a2 - magic;
  marks[n_marks][1] = executed;
  ++n_marks;
  if (!per_block) return;
  if (window_state == 0 && a2 - magic == 1) {
    for (size_t i = 0; i < n_blocks; ++i) blocks[i]->executions = 0;
    window_state = 1;
  } else if (window_state == 1 && a2 - magic == 2) {
    for (size_t i = 0; i < n_blocks; ++i) blocks[i]->window = blocks[i]->executions;
    window_state = 2;
  }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
  if (!per_block) return;
  if (n_blocks == block_capacity) {
    block_capacity = block_capacity ? block_capacity * 2 : 4096;
    blocks = realloc(blocks, block_capacity * sizeof *blocks);
    if (!blocks) abort();
  }
  Block *block = calloc(1, sizeof *block);
  if (!block) abort();
  block->pc = qemu_plugin_tb_vaddr(tb);
  block->insns = n;
  blocks[n_blocks++] = block;
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &block->executions, 1);
}

static void at_exit_write(qemu_plugin_id_t id, void *userdata) {
  (void)id, (void)userdata;
  FILE *out = fopen(out_path, "w");
  if (!out) return;
  fprintf(out, "{\"total\": %" PRIu64 ", \"marks\": [", executed);
  for (size_t i = 0; i < n_marks; ++i)
    fprintf(out, "%s[%" PRIu64 ", %" PRIu64 "]", i ? ", " : "", marks[i][0], marks[i][1]);
  fprintf(out, "]");
  if (per_block) {
    fprintf(out, ", \"blocks\": [");
    bool first = true;
    for (size_t i = 0; i < n_blocks; ++i) {
      if (!blocks[i]->window) continue;
      fprintf(out, "%s[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", first ? "" : ", ", blocks[i]->pc,
              blocks[i]->window * blocks[i]->insns, blocks[i]->window);
      first = false;
    }
    fprintf(out, "]");
  }
  fprintf(out, "}\n");
  fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    else if (strncmp(argv[i], "syscall=", 8) == 0) mark_syscall = strtoll(argv[i] + 8, NULL, 0);
    else if (strncmp(argv[i], "magic=", 6) == 0) magic = strtoull(argv[i] + 6, NULL, 0);
    else if (strcmp(argv[i], "symbols=1") == 0) per_block = true;
  }
  if (!out_path[0] || mark_syscall < 0) return -1;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  qemu_plugin_register_atexit_cb(id, at_exit_write, NULL);
  return 0;
}
