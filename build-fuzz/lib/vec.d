build-fuzz/lib/vec.o: lib/vec.c lib/vec.h lib/stream.h lib/error.h

lib/vec.h:

lib/stream.h:

lib/error.h:
