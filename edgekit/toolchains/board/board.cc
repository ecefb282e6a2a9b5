// edgekit's board file for QEMU's Arm MPS2/MPS3 boards: the vector table, start-up, semihosting I/O, the
// timer and profiler hooks the application calls, and fault reporting. Linked with the application that
// `edgekit export` writes (main.cc, unchanged) to run it on an emulated core.
//
// Counting: edgekit_mark() is an empty function; edgekit's QEMU plugin records the running instruction
// count each time it executes. The board calls it at each timer read (the application's timed window) and
// at the start and end of each op (TFLite Micro's profiler events), and lists those events in order at
// exit, so each recorded count can be paired with its event.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensorflow/lite/micro/micro_profiler_interface.h"

extern "C" int main(void);
extern "C" void initialise_monitor_handles(void);
extern "C" void __libc_init_array(void);
extern "C" void _exit(int);
// What crti.o and crtbegin.o would give (the board brings its own start-up, so it links without them).
extern "C" void _init(void) {}
extern "C" void _fini(void) {}
extern "C" {
void* __dso_handle = &__dso_handle;
}

extern "C" __attribute__((noinline, used)) void edgekit_mark(void) { __asm__ volatile("" ::: "memory"); }

namespace {

constexpr int kMaxEvents = 8192;
struct Event {
  char kind;  // T: timer read, B: op begins, E: op ends
  const char* tag;
};
Event events[kMaxEvents];
int event_count = 0;
bool events_lost = false;

void Record(char kind, const char* tag) {
  if (event_count == kMaxEvents) {
    events_lost = true;
    return;
  }
  events[event_count++] = {kind, tag};
  edgekit_mark();
}

void PrintEvents() {
  std::printf("{\"edgekit_events\": [");
  for (int i = 0; i < event_count; ++i) {
    if (events[i].kind == 'B') std::printf("%s\"B:%s\"", i ? ", " : "", events[i].tag ? events[i].tag : "?");
    else std::printf("%s\"%c\"", i ? ", " : "", events[i].kind);
  }
  std::printf("], \"lost\": %s}\n", events_lost ? "true" : "false");
  std::fflush(stdout);
}

class CountingProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    Record('B', tag);
    return 0;
  }
  void EndEvent(uint32_t) override { Record('E', nullptr); }
};

void Fault(const char* name) {
  volatile uint32_t* cfsr = reinterpret_cast<volatile uint32_t*>(0xE000ED28);
  std::printf("{\"fault\": \"%s\", \"cfsr\": \"0x%08lx\"}\n", name, static_cast<unsigned long>(*cfsr));
  std::fflush(stdout);
  _exit(1);
}

}  // namespace

extern "C" uint32_t edgekit_micros(void) {
  Record('T', nullptr);
  return 0;  // time on an emulated core means nothing: edgekit counts instructions instead
}

tflite::MicroProfilerInterface* edgekit_profiler() {
  static CountingProfiler profiler;
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit(PrintEvents);
  }
  return &profiler;
}

extern "C" void NmiHandler(void) { Fault("NMI"); }
extern "C" void HardFaultHandler(void) { Fault("HardFault"); }
extern "C" void MemManageHandler(void) { Fault("MemManage"); }
extern "C" void BusFaultHandler(void) { Fault("BusFault"); }
extern "C" void UsageFaultHandler(void) { Fault("UsageFault"); }
extern "C" void SecureFaultHandler(void) { Fault("SecureFault"); }
extern "C" void OtherHandler(void) { Fault("unexpected exception"); }

extern "C" char __bss_start__[], __bss_end__[], __stack_top[];

extern "C" __attribute__((noreturn)) void ResetHandler(void) {
#if EDGEKIT_ENABLE_FPU
  // CPACR: full access to CP10 and CP11 (the FPU, and MVE on Armv8.1-M), before any FP instruction.
  *reinterpret_cast<volatile uint32_t*>(0xE000ED88) |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  // QEMU loads .data where it runs; only .bss needs clearing.
  for (char* p = __bss_start__; p < __bss_end__; ++p) *p = 0;
  initialise_monitor_handles();
  __libc_init_array();
  std::exit(main());
}

using Handler = void (*)(void);
extern "C" __attribute__((section(".vectors"), used)) const Handler edgekit_vectors[16] = {
    reinterpret_cast<Handler>(__stack_top), ResetHandler, NmiHandler, HardFaultHandler, MemManageHandler,
    BusFaultHandler, UsageFaultHandler, SecureFaultHandler, nullptr, nullptr, nullptr, OtherHandler,
    OtherHandler, nullptr, OtherHandler, OtherHandler};
