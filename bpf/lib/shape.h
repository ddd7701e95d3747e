/* Compile-time shape of a datapath object: which stages are compiled in.
 * These change the code itself, so they are -D flags and part of a template's
 * key (host/kernel/templates), unlike the endpoint's own values (endpoint.h),
 * which are load-time constants. Nothing defined = every stage, which is the
 * generic object every test, replay and benchmark has always loaded. */
#pragma once

#ifndef ENABLE_LB
#define ENABLE_LB 1
#endif
#ifndef ENABLE_NAT
#define ENABLE_NAT 1
#endif
#ifndef ENABLE_POLICY
#define ENABLE_POLICY 1
#endif
