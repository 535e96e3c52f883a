{
  "targets": [
    {
      "target_name": "litefs_fuse",
      "sources": ["native/addon.c", "native/files.c", "native/ops.c", "native/events.c", "native/loop.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lpthread"],
      "defines": ["FUSE_USE_VERSION=314", "_GNU_SOURCE", "NAPI_VERSION=8"]
    },
    {
      "target_name": "litefs_crc",
      "sources": ["native/crc64.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "litefs_lz4",
      "sources": ["native/lz4.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags liblz4)"],
      "libraries": ["<!@(pkg-config --libs liblz4)"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
