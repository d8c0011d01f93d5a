# Builds the small N-API addon (native/fleece_native.c) that npm install/ci compile with node-gyp.
{
  "targets": [
    {
      "target_name": "fleece_native",
      "sources": ["native/fleece_native.c", "native/native_common.c", "native/file_writer.c", "native/gcm.c", "native/write_back.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS"]
    }
  ]
}
