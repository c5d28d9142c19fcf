#ifndef UNW_LIB_H
#define UNW_LIB_H
void lib_walk(int depth, void (*cb)(void));
#endif
