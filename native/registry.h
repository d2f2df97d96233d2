// Live loops per env (one env per thread: the main thread or a worker). The env cleanup hook stops them
// all when the process or a worker exits in the middle of a measurement, so exit never hangs.
#pragma once
#include <napi.h>

namespace bp {

class Stoppable {
 public:
  virtual ~Stoppable() = default;
  // Abort every thread of this object and join them. Safe to call more than once.
  virtual void Shutdown() = 0;
};

void track(Napi::Env env, Stoppable* s);
void forget(Stoppable* s);

}  // namespace bp
