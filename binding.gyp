{
  "targets": [
    {
      "target_name": "bandwidth_probe",
      "sources": ["native/binding.cc", "native/registry.cc", "native/run.cc", "native/tcp_loop.cc", "native/tcpinfo.cc", "native/tls.cc", "native/udp_loop.cc", "native/udp_run.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-psabi"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-O3"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-Wl,--as-needed"]
    }
  ]
}
