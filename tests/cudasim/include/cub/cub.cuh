/* cudasim: the parts of CUB this project uses (see cudasim_cub.h). */
#include "../cudasim_cub.h"
