build-fuzz/lib/json.o: lib/json.c lib/json.h lib/stream.h lib/error.h \
  lib/vec.h

lib/json.h:

lib/stream.h:

lib/error.h:

lib/vec.h:
