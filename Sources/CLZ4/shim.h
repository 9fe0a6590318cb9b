// LZ4 block compression, used by the paged optimizer's spill store.
#include <lz4.h>
