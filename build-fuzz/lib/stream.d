build-fuzz/lib/stream.o: lib/stream.c lib/stream.h lib/error.h

lib/stream.h:

lib/error.h:
