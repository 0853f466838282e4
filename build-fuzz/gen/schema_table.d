build-fuzz/gen/schema_table.o: build-fuzz/gen/schema_table.c lib/schema.h \
  lib/stream.h

lib/schema.h:

lib/stream.h:
