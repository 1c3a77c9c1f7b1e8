// Which vector code is compiled in. DSMOE_X86 is off on ARM and other targets (scalar paths only), and can be
// forced off on x86 with -DDSMOE_NO_X86 so the portable build is compiled and tested here too.
#pragma once

#if (defined(__x86_64__) || defined(__i386__)) && !defined(DSMOE_NO_X86)
#define DSMOE_X86 1
#else
#define DSMOE_X86 0
#endif
