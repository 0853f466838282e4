build-fuzz/lib/schema.o: lib/schema.c lib/schema.h lib/stream.h \
  lib/error.h lib/vec.h

lib/schema.h:

lib/stream.h:

lib/error.h:

lib/vec.h:
