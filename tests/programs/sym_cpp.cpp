// sym_cpp.cpp - the symbolizer's C++ test subject (g++ -O1): a member
// function of a class template instantiated twice (ns::Worker<int>::run,
// ns::Worker<long>::run) and a function inside a namespace
// (ns::detail::churn), so names arrive mangled and must be demangled.
// Stacks: ns::Worker<T>::run <- ns::drive <- main, and
// ns::detail::churn <- ns::drive <- main. Runs for argv[1] seconds.
#include <cstdio>
#include <cstdlib>
#include <ctime>

// gcc 12 sets up no frame in a leaf function at -O1 and above, even with
// -fno-omit-frame-pointer; asking for the frame's address keeps it (the asm
// emits no instruction), so a frame-pointer unwinder sees the caller.
#define KEEP_FRAME() __asm__ volatile("" ::"r"(__builtin_frame_address(0)))

namespace ns {

namespace detail {
volatile unsigned long sink;

__attribute__((noipa)) unsigned long churn(unsigned long n)
{
	KEEP_FRAME();
	unsigned long x = sink;
	for (unsigned long i = 0; i < n; i++)
		x = (x << 5) + x + i;
	sink = x;
	return x;
}
}  // namespace detail

template <typename T> class Worker {
public:
	explicit Worker(T seed) : state_(seed) {}
	__attribute__((noipa)) T run(unsigned long n);

private:
	volatile T state_;
};

template <typename T> T Worker<T>::run(unsigned long n)
{
	KEEP_FRAME();
	for (unsigned long i = 0; i < n; i++)
		state_ = state_ * 31 + static_cast<T>(i);
	return state_;
}

template class Worker<int>;
template class Worker<long>;

__attribute__((noipa)) long drive(int rounds)
{
	long r = 0;
	for (int k = 0; k < rounds; k++) {
		Worker<int> wi(k);
		r += wi.run(400000);
		Worker<long> wl(k);
		r += wl.run(200000);
		r += static_cast<long>(detail::churn(200000));
	}
	__asm__ volatile("" ::: "memory");
	return r;
}

}  // namespace ns

static double now()
{
	timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5, end = now() + secs;
	long r = 0;
	while (now() < end)
		r += ns::drive(1);
	std::printf("%ld\n", r);
	return 0;
}
